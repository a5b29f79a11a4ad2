import sys

from optreport.report.build import main

sys.exit(main())
