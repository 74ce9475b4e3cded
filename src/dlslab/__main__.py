from dlslab.cli import main

raise SystemExit(main())
