"""Allow ``python -m remote_guard``."""

from remote_guard.cli import main

raise SystemExit(main())
