import sys

from optreport.runs.sweep import main

sys.exit(main())
