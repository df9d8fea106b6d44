"""The page's words: each step's equation with the live sizes of the model in use, its plain sentences, the model card.

Pure functions of a ViTConfig (and of an entry, for the model card): no Gradio.
"""
from __future__ import annotations

from ..config import ViTConfig
from ..families.catalogue import NOT_THE_PAPERS, FamilyCheckpoint
from ..weights import UNTRAINED_NOTE

STEPS = ("0 · Input", "1 · Eq. 1 Patches", "2 · Eq. 2 Attention", "3 · Eq. 3 MLP", "4 · Eq. 4 Prediction",
         "5 · Why this class")


def sizes(config: ViTConfig) -> dict[str, int]:
    """The paper's letters for this model."""
    H, W = config.image_hw
    rows, cols = config.grid
    return {
        "H": H, "W": W, "C": config.channels, "P": config.patch_size, "N": config.num_patches, "T": config.seq_len,
        "D": config.hidden_dim, "L": config.depth, "h": config.heads, "d": config.head_dim, "MLP": config.mlp_dim,
        "K": config.num_classes, "rows": rows, "cols": cols, "patch_dim": config.patch_dim,
    }


def _prefix_tex(config: ViTConfig) -> str:
    """Eq. 1's prefix tokens in LaTeX, each followed by a separator: x_class; x_dist; x_reg^1..k;"""
    layout = config.layout
    parts = [{"CLS": "x_\\text{class}", "DIST": "x_\\text{dist}"}[label] for label in layout.prefix_labels
             if label in ("CLS", "DIST")]
    if layout.num_registers:
        parts.append(f"x_\\text{{reg}}^{{1..{layout.num_registers}}}")
    return "".join(part + ";\\; " for part in parts)


def _position_rows_tex(config: ViTConfig) -> str:
    """E_pos's rows in the paper's letters: T when it covers every token, else what it covers."""
    layout = config.layout
    covered = len(layout.position_tokens) - config.num_patches
    return "T" if len(layout.position_tokens) == layout.T else f"({covered} + N)" if covered else "N"


def _prefix_words(config: ViTConfig) -> str:
    """What Eq. 1 puts in front of the patches and where E_pos goes, in words, with this model's numbers."""
    layout, N, T = config.layout, config.num_patches, config.seq_len
    if layout.prefix_labels == ("CLS",) and layout.position_covers == "all":  # the paper's words
        return (f"A learned class token is put in front (T = N + 1 = {T} rows) and a learned position embedding is "
                f"added to every row.")
    names = {"CLS": "a learned class token", "DIST": "a distillation token (DeiT's second head reads it)"}
    tokens = [names[label] for label in layout.prefix_labels if label in names]
    if layout.num_registers:
        tokens.append(f"{layout.num_registers} register tokens (REG1..REG{layout.num_registers}, read by no head)")
    counts = " + ".join(["1"] * (layout.num_prefix - layout.num_registers)  # the class and distillation tokens
                        + [str(layout.num_registers)] * bool(layout.num_registers) + [str(N)])
    front = (f"In front of the patches go {', '.join(tokens)}: T = {counts} = {T} rows. " if tokens
             else f"No token is put in front of the patches: T = N = {T} rows. ")
    where = {"all": "every row", "class_and_patches": "the class token and the patches (not the registers)",
             "patches": "the patches only"}[layout.position_covers]
    return front + f"A learned position embedding is added to {where}."


def _query_words(config: ViTConfig) -> str:
    """Eq. 2's query when no patch is picked and where rollout starts, in words (the paper's: the class token)."""
    layout = config.layout
    if layout.query_labels() == ("CLS",):
        return ("or unpick it to query the class token and see what the prediction draws on. Attention rollout "
                "multiplies the layers' attention, with the residual path added, to follow the class token back to the "
                "patches (Fig. 6).")
    start = "the mean of the patch rows, as the output is the patch tokens' mean" if layout.pooling == "mean" else "CLS"
    return (f"or choose a token as the query ({', '.join(layout.query_labels())}) to see where it looks. Attention "
            f"rollout multiplies the layers' attention, with the residual path added, to follow the output back to the "
            f"patches from {start} (Fig. 6).")


# What a class-specific explanation says on a backbone, one sentence.
NEEDS_CLASSIFIER = ("Step 5 explains a class, and this model is a backbone with no classifier: pick a model with "
                    "classes, or see step 4's features.")


def _eq4(config: ViTConfig) -> str:
    """Eq. 4 in LaTeX, as this model forms its output: the class token, the patches' mean (LN after it with fc_norm,
    before it without), DeiT's two heads averaged; a backbone stops at y."""
    s = sizes(config)
    R_D = f"\\in \\mathbb{{R}}^{{{s['D']}}}"
    patches = f"\\frac{{1}}{{N}}\\sum_{{i=1}}^{{N}}"
    if config.pooling == "mean" and config.fc_norm:
        y = f"y = \\mathrm{{LN}}\\Big({patches} z_L^{{\\text{{patch }} i}}\\Big),\\quad N = {s['N']},\\quad y {R_D}"
    elif config.pooling == "mean":
        y = f"y = {patches} \\mathrm{{LN}}(z_L^{{\\text{{patch }} i}}),\\quad N = {s['N']},\\quad y {R_D}"
    else:
        y = f"y = \\mathrm{{LN}}(z_L^0) = \\mathrm{{LN}}(z_{{{s['L']}}}^0) {R_D}"
    K = f"\\in \\mathbb{{R}}^{{K}} = \\mathbb{{R}}^{{{s['K']}}}"
    if not config.has_classifier:
        head = "\\text{no classifier: } y \\text{ is the output}"
    elif config.pooling == "class_and_distillation":
        head = (f"\\text{{logits}} = \\tfrac{{1}}{{2}}\\big(y\\,W_\\text{{head}} + b + \\mathrm{{LN}}(z_L^\\text{{dist}})"
                f"\\,W_\\text{{dist}} + b_\\text{{dist}}\\big) {K}")
    else:
        head = f"\\text{{logits}} = y\\,W_\\text{{head}} + b {K}"
    return f"$${y},\\qquad {head}$$"


def _eq4_words(config: ViTConfig) -> str:
    """How this model forms its output y and what reads it, in two or three sentences."""
    s = sizes(config)
    if config.pooling == "mean" and config.fc_norm:
        pooled = (f"No single token is read: the final states of the N = {s['N']} patch tokens are averaged, and one "
                  f"LayerNorm after the mean (fc_norm) gives y")
    elif config.pooling == "mean":
        pooled = (f"No single token is read: the final LayerNorm is applied to each of the N = {s['N']} patch tokens' "
                  f"final states, and their mean is y")
    elif config.pooling == "class_and_distillation":
        pooled = ("Two tokens are read: the class token's final state $z_L^0$ after one more LayerNorm is y, and the "
                  "distillation token's after the same LayerNorm goes to a second head, trained to agree with a "
                  "teacher")
    else:
        pooled = "Only the class token's final state $z_L^0$ is used: after one more LayerNorm it is y"
    if not config.has_classifier:
        return (f"{pooled}. This model is a backbone: it has no classifier, and y, {s['D']} numbers, is its output, "
                f"the features that other models are trained on. So there are no classes here: instead, the principal "
                f"components of its patch features as colours (patches the model sees alike get alike colours) and a "
                f"picked patch's cosine similarity to every other patch.")
    head = (f"at inference the two heads' K = {s['K']} scores are averaged, and softmax turns them into probabilities"
            if config.pooling == "class_and_distillation" else
            f"a linear head turns y into K = {s['K']} scores, and softmax turns them into probabilities")
    lens = ("The logit lens applies that same LayerNorm and head to the class token after every layer, to see at "
            "which depth the prediction forms." if config.layout.query_token is not None else
            "There is no logit lens: it reads the class token after every layer, and this model has none.")
    return (f"{pooled}; {head}. {lens} Below, the patch tokens as Eq. 4 reads them: their principal components as "
            f"colours, and a picked patch's cosine similarity to every other patch.")


def equation(step: int, config: ViTConfig) -> str:
    """The step's equation in LaTeX ($$...$$) with this model's sizes."""
    s = sizes(config)
    if step == 0:
        return (f"$$x \\in \\mathbb{{R}}^{{H \\times W \\times C}} = \\mathbb{{R}}^{{{s['H']} \\times {s['W']} \\times "
                f"{s['C']}}}, \\qquad \\hat x_c = \\frac{{x_c - \\mu_c}}{{\\sigma_c}}$$")
    if step == 1:
        return (f"$$z_0 = [\\,{_prefix_tex(config)}x_p^1 E;\\; x_p^2 E;\\; \\dots;\\; x_p^{{{s['N']}}} E\\,] + E_{{pos}},"
                f"\\qquad E \\in \\mathbb{{R}}^{{(P^2 C) \\times D}} = \\mathbb{{R}}^{{{s['patch_dim']} \\times {s['D']}}},"
                f"\\quad E_{{pos}} \\in \\mathbb{{R}}^{{{_position_rows_tex(config)} \\times D}} = "
                f"\\mathbb{{R}}^{{{len(config.layout.position_tokens)} \\times {s['D']}}}$$")
    if step == 2:
        return (f"$$z'_\\ell = \\mathrm{{MSA}}(\\mathrm{{LN}}(z_{{\\ell-1}})) + z_{{\\ell-1}},\\quad \\ell = 1 \\dots {s['L']},"
                f"\\qquad A = \\mathrm{{softmax}}\\!\\left(\\frac{{q k^\\top}}{{\\sqrt{{D_h}}}}\\right) \\in "
                f"\\mathbb{{R}}^{{h \\times T \\times T}} = \\mathbb{{R}}^{{{s['h']} \\times {s['T']} \\times {s['T']}}},"
                f"\\quad D_h = D / h = {s['d']}$$")
    if step == 3:
        return (f"$$z_\\ell = \\mathrm{{MLP}}(\\mathrm{{LN}}(z'_\\ell)) + z'_\\ell,\\quad \\ell = 1 \\dots {s['L']},"
                f"\\qquad \\mathrm{{MLP}}: \\mathbb{{R}}^{{{s['D']}}} \\to \\mathbb{{R}}^{{{s['MLP']}}} "
                f"\\xrightarrow{{\\text{{GELU}}}} \\mathbb{{R}}^{{{s['D']}}},\\quad z_\\ell \\in \\mathbb{{R}}^{{{s['T']} \\times {s['D']}}}$$")
    if step == 4:
        return _eq4(config)
    if step == 5:
        return (f"$$R \\leftarrow R + \\bar A_\\ell R,\\quad \\bar A_\\ell = \\mathbb{{E}}_h\\big[(\\nabla A_\\ell \\odot "
                f"A_\\ell)^+\\big],\\quad \\ell = 1 \\dots {s['L']},\\qquad \\text{{relevance of patch }} i = R_{{0,\\,i}}$$")
    raise ValueError(f"There is no step {step}; steps are 0..{len(STEPS) - 1}.")


def explanation(step: int, config: ViTConfig, preprocessing=None) -> str:
    """The step's equation and two or three plain sentences, in Markdown."""
    s = sizes(config)
    if step == 0:
        pre = preprocessing
        if pre is None:
            resize = "it is resized to that size"
        elif pre.resize_to is not None:  # Hugging Face's ViTImageProcessor, timm's crop_mode="squash"
            height, width = pre.resize_to
            resize = f"the whole image is resized to {width} × {height} pixels, its aspect ratio not kept"
            if pre.crop_size < min(height, width):
                resize += f", and the central {pre.crop_size} × {pre.crop_size} square is kept"
        else:
            resize = (f"its shorter side is resized to {pre.resize_size} pixels and the central {pre.crop_size} × "
                      f"{pre.crop_size} square is kept")
        gray = " It is turned into grayscale first, because this model has one input channel." if s["C"] == 1 else ""
        text = (f"The model takes an image of exactly {s['H']} × {s['W']} pixels with {s['C']} channel"
                f"{'s' if s['C'] > 1 else ''}: {resize}.{gray} Each channel is then shifted by the mean μ and divided by "
                f"the standard deviation σ of the images the model was trained on, so the numbers it reads are centred "
                f"near 0.")
    elif step == 1:
        text = (f"The image is cut into N = HW/P² = {s['H']}·{s['W']}/{s['P']}² = {s['N']} patches of "
                f"{s['P']}×{s['P']}×{s['C']} = {s['patch_dim']} values, read row by row ({s['rows']} rows × {s['cols']} "
                f"columns). Every flattened patch is multiplied by the same matrix E, which is a convolution with kernel "
                f"and stride {s['P']}: its {s['D']} output channels are the feature maps below. "
                f"{_prefix_words(config)}")
    elif step == 2:
        text = (f"In each of the L = {s['L']} layers, each of the h = {s['h']} heads scores every token against every "
                f"other (each row of A sums to 1) and mixes the tokens by those weights; the result is added back to "
                f"the stream. Click a patch of the picture with the patch grid (beside the steps, or above them on a "
                f"phone) to see where it looks, {_query_words(config)}")
    elif step == 3:
        text = (f"The MLP works on each of the T = {s['T']} tokens on its own: {s['D']} → {s['MLP']} → {s['D']} with a "
                f"GELU in between, and its output is added to the stream. Before both the attention and the MLP, "
                f"LayerNorm rescales each token to mean 0 and variance 1 (then a learned scale and shift), which keeps "
                f"the sub-layers' inputs in range while the residual stream itself keeps growing.")
    elif step == 4:
        text = _eq4_words(config)
    elif step == 5 and not config.has_classifier:
        text = (f"{NEEDS_CLASSIFIER} Kept here, because they read no class: how far the output y moves when you click "
                f"patches out of the sequence, the position embeddings' similarity, and how far y moves at a larger "
                f"input (Section 3.2: its {s['N']} position embeddings interpolated in 2-D).")
    elif step == 5:
        text = (f"Attention maps and rollout are the same for every class; *relevance* (Chefer, Gur & Wolf, 2021) weighs each "
                f"layer's attention by the gradient of the chosen class's score, keeps the positive part and adds it up "
                f"from R = I, and *Grad-CAM* (Selvaraju and colleagues, 2017) weighs the tokens entering the last block by the "
                f"same gradient. A ViT lets us test whether a map is faithful without guessing: take its most relevant "
                f"patches out of the sequence (tokens and position embeddings leave, the class token stays) and watch "
                f"the class's probability fall (deletion), or put them back one by one (insertion). Click patches "
                f"below to take them out yourself. Section 3.2: the model reads a larger image once its {s['N']} position "
                f"embeddings are interpolated in 2-D to the larger grid.")
    else:
        raise ValueError(f"There is no step {step}; steps are 0..{len(STEPS) - 1}.")
    return equation(step, config) + "\n\n" + text


def _family_line(entry) -> str:
    """The loaded model's family in words, with its tokens: "DINOv2 ViT-S/14 with 4 registers; tokens CLS + 4
    registers + 1369 patches, a backbone" (explorer.families.names)."""
    from ..families.names import classes_words, family_name

    config, layout = entry.config, entry.config.layout
    prefix = [label for label in layout.prefix_labels if not label.startswith("REG")]
    prefix += [f"{layout.num_registers} registers"] if layout.num_registers else []
    name = family_name(config, entry.source)  # "timm vit_small_patch14_reg4_dinov2.lvd142m from ..."
    name = f"the paper's ViT, {name}" if name.startswith("ViT-") else name
    return (f"{name}; tokens {' + '.join(prefix + [f'{config.num_patches} patches'])}, "
            f"{classes_words(config.num_classes)}")


def model_card(entry=None, spec=None, availability: str = "") -> str:
    """Which model and weights are in use and where they come from, in Markdown: for the paper's checkpoints and the
    user's own folders also what the model is (pre-training and fine-tuning data, resolution), and for every model
    of Table 1's shapes that row of the paper."""
    from ..families import hub_cache_dir
    from .registry import hub_folder_name, table_1_row  # the menu's own words

    lines = []
    if entry is not None:
        c = entry.config
        lines.append(f"**Model in use:** {entry.spec.label} — {entry.model_name}, weights *{entry.weights}*; "
                     f"source: {entry.source}. L = {c.depth}, D = {c.hidden_dim}, h = {c.heads}, P = {c.patch_size}, "
                     f"input {c.image_hw[0]}×{c.image_hw[1]}×{c.channels}.")
        spec, name = entry.spec, entry.model_name
    elif spec is not None:
        lines.append(f"**Model chosen:** {spec.label} ({spec.description}); upload an image or pick an example to run it.")
        name = spec.preset
    kind = spec.kind if spec is not None else ""
    paper = getattr(spec, "paper", None)
    if entry is not None and kind != "untrained":
        lines.append(f"**Family:** {_family_line(entry)}.")
    if kind == "hub" and isinstance(paper, FamilyCheckpoint):
        lines.append(f"**What it is:** {paper.family} {paper.model}, **{NOT_THE_PAPERS}** checkpoint: {paper.note}; "
                     f"{paper.resolution}×{paper.resolution} pixels; output: {paper.output}.")
    elif kind == "hub" and paper is not None:
        lines.append(f"**What it is:** {paper.model} pre-trained on {paper.pretraining}, then fine-tuned on "
                     f"{paper.finetuning} at {paper.resolution}×{paper.resolution} pixels; {paper.note}.")
        lines.append(f"**Weights:** published on the Hugging Face Hub as [{paper.hub_id}](https://huggingface.co/"
                     f"{paper.hub_id}) ({paper.library} format), kept in the Hugging Face cache {hub_cache_dir()} "
                     f"once downloaded, or read from the subfolder {hub_folder_name(paper.hub_id)} of EXPLORER_MODELS "
                     f"where that exists.")
    if kind == "folder":
        lines.append(f"**What it is:** your own model — {spec.description.removeprefix('your ')} — from the folder "
                     f"{spec.path} (EXPLORER_MODELS); the folder does not record its pre-training or fine-tuning "
                     f"data.")
    if kind in ("hub", "folder") and entry is not None:
        lines.append(f"**Input:** {entry.preprocessing.describe()}")
    if entry is not None and not entry.config.has_classifier:
        lines.append(f"**Output:** a backbone with no classifier: its output is y, {entry.config.hidden_dim} features, "
                     f"so step 4 shows its patch features instead of classes, and step 5's class explanations need a "
                     f"classifier.")
    if kind == "hub" and isinstance(paper, FamilyCheckpoint):
        lines.append(f"**Weights:** published on the Hugging Face Hub as [{paper.hub_id}](https://huggingface.co/"
                     f"{paper.hub_id}) ({paper.library} format, revision {paper.revision}), kept in the Hugging Face "
                     f"cache {hub_cache_dir()} once downloaded, or read from the subfolder "
                     f"{hub_folder_name(paper.hub_id)} of EXPLORER_MODELS where that exists.")
    if spec is not None and table_1_row(name):
        lines.append(f"**The paper's Table 1 row:** {table_1_row(name)}.")
    if kind == "untrained":
        lines.append(f"⚠️ **{UNTRAINED_NOTE}**")
    if kind == "pretrained":
        lines.append("Note: torchvision's weights are ImageNet-1k / SWAG trainings, not the paper's JFT-300M or "
                     "ImageNet-21k checkpoints.")
    if kind == "checkpoint" and entry is not None and entry.config.channels == 1:
        pre = entry.preprocessing
        lines.append(f"This model was trained on Fashion-MNIST: photos are mapped to what it expects — {pre.describe()}")
    if availability:
        lines.append(availability)
    return "\n\n".join(lines)
