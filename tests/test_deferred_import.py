"""The worker server's stand-in for matplotlib (``zygote.defer_import``): importing it costs nothing, and every way a
notebook uses it still gets the real module. Each case runs in a fresh interpreter (stand-ins change sys.modules)."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.engine

CASES = {
    "import_only": "import matplotlib.pyplot as plt\nimport matplotlib\nfrom matplotlib import pyplot\n"
                   "assert 'matplotlib.figure' not in sys.modules and pyplot is plt",
    "first_use": "import matplotlib.pyplot as plt\nfig = plt.figure()\nassert type(fig).__name__ == 'Figure'",
    "other_submodule": "import matplotlib.pyplot as plt\nimport matplotlib.cm\nassert matplotlib.cm.viridis.name == "
                       "'viridis'\nassert plt.plot is sys.modules['matplotlib.pyplot'].plot",
    "submodule_first": "import matplotlib.tri\nassert matplotlib.tri.Triangulation",
    "package_attribute": "import matplotlib as mpl\nmpl.use('Agg')\nassert mpl.get_backend().lower() == 'agg'",
    "from_pyplot": "from matplotlib.pyplot import figure\nassert figure.__module__ == 'matplotlib.pyplot'",
    "from_package": "from matplotlib import cm\nassert cm.viridis",
}


@pytest.mark.parametrize("case", CASES)
def test_a_deferred_matplotlib_behaves_as_the_real_one(case, tmp_path):
    program = ("import sys\nfrom autograder.worker.zygote import defer_import\n"
               "defer_import('matplotlib', 'matplotlib.pyplot')\n" + CASES[case] + "\nprint('ok')")
    run = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120,
                         env={"MPLBACKEND": "Agg", "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert run.stdout.strip() == "ok", run.stderr[-2000:]
