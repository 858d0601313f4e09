from mafioso.cli import main

raise SystemExit(main())
