"""ViT Explorer: a Vision Transformer (Dosovitskiy et al. 2020), one equation at a time, on your own image.

    python app.py [--host 127.0.0.1] [--port 7860]   (env EXPLORER_HOST / GRADIO_SERVER_NAME, EXPLORER_PORT /
                                                      GRADIO_SERVER_PORT; a Hugging Face Space binds 0.0.0.0:7860)

The page is built by explorer.app.build_demo(server) from the view registry in explorer/app/views.py; this file only
starts it (a Hugging Face Space runs `python app.py`; on a ZeroGPU Space main() imports `spaces` before torch).
"""
from explorer.app import main

if __name__ == "__main__":
    main()
