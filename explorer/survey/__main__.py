"""`python -m explorer.survey`: the survey's command line (explorer.survey.cli)."""
from .cli import main

raise SystemExit(main())
