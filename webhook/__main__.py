"""`python -m webhook` runs the same command line as `dify-volume-init`."""

from webhook.cli import main

raise SystemExit(main())
