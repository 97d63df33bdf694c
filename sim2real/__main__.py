from sim2real.cli import main

raise SystemExit(main())
