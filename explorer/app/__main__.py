"""python -m explorer.app: the same as `python app.py`."""
from . import main

main()
