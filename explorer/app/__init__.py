"""The web app over the explorer package: everything Gradio lives here, nothing else imports it.

    settings.py   the environment, read once (threads, device, address, folders, bounds)
    registry.py   the model menu, loaded lazily          cache.py      the trace cache (Entry, TraceCache)
    server.py     the state every visitor shares         memory.py     the memory guard
    text.py       each step's words and the model card   views/        each view declared once, a module per step
    transport.py  how figures and pictures travel        plot.py       the plot component
    ui.py         the page and its events, built from views/
    zerogpu.py    the events that run a model, lent a GPU on a ZeroGPU Space (spaces.GPU)

The benchmarks that drive this app live outside the package, in the checkout's benchmarks/ folder.

`build_demo(server)` and `main()` import Gradio when called, so `import explorer.app` stays light.
"""
from __future__ import annotations


def build_demo(server=None):
    """The Gradio Blocks of the app for `server` (an explorer.app.server.Server; one from the environment if None)."""
    from .server import Server
    from .ui import build_demo as build

    return build(server or Server())


def main(argv=None) -> None:
    """`python app.py` / `vit-explorer`: read the settings, build the page, launch it. On a Space the `spaces`
    package is imported first, before torch, as ZeroGPU requires (explorer/app/zerogpu.py)."""
    from . import zerogpu

    zerogpu.import_spaces()
    import argparse

    from .settings import Settings, configure_threads

    settings = Settings.from_env()
    parser = argparse.ArgumentParser(description="ViT Explorer (Gradio app).")
    parser.add_argument("--host", default=settings.host, help=f"address to bind (default here: {settings.host}; env "
                        "EXPLORER_HOST, GRADIO_SERVER_NAME; 0.0.0.0 on a Hugging Face Space, else 127.0.0.1)")
    parser.add_argument("--port", type=int, default=settings.port,
                        help=f"port (default here: {settings.port}; env EXPLORER_PORT, GRADIO_SERVER_PORT, else 7860)")
    args = parser.parse_args(argv)
    try:
        import gradio  # noqa: F401
    except ModuleNotFoundError as error:
        if (error.name or "").split(".")[0] != "gradio":
            raise
        raise SystemExit('The app needs Gradio, which is not installed: pip install "vit-explorer[app]" (or pip '
                         'install -r requirements.txt in a checkout).') from None

    from .server import Server
    from .ui import build_demo as build, launch_options

    # The page needs neither torch nor torchvision (explorer/deferred.py): it is served first, then torch is imported
    # (configure_threads) and the default model loads in the background.
    server = Server(settings)
    demo = build(server)
    if zerogpu.active():  # its CUDA stand-in answers on the main thread only: the default model goes to "cuda" here
        configure_threads()
        zerogpu.load_default(server)
    demo.launch(server_name=args.host, server_port=args.port, prevent_thread_lock=True, **launch_options(server))
    configure_threads()
    server.warm_up()  # on ZeroGPU already loaded: nothing to do
    demo.block_thread()
