from medix_lib.cli import main

raise SystemExit(main())
