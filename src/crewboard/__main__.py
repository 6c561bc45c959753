from crewboard.cli import main

raise SystemExit(main())
