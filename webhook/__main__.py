"""`python -m webhook` runs the same command line as `dify-volume-init`."""

from webhook.launch import main

raise SystemExit(main())
