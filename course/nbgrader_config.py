"""nbgrader's configuration for the course (run nbgrader from this folder: `make course`, `make grade-demo`).

Layout (nbgrader's): source/<assignment>/ holds the notebooks with solutions (committed);
release/, submitted/, autograded/, feedback/ and gradebook.db are made by the commands (ignored by git).
"""

c = get_config()  # noqa: F821 (nbgrader provides it)

c.CourseDirectory.course_id = "wsss"
c.CourseDirectory.root = "."
# what a student finds in place of a solution
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"
# the check cells import torch and the library: allow for a cold start on a laptop
c.ExecutePreprocessor.timeout = 120
# the kernel client the project executes every notebook with: a reply whose socket wake-up was missed
# is read within half a second (nbclient's own client waits out the cell's timeout, then grades the cell
# as timed out); see wsss_lib/experiments/kernels.py
c.ExecutePreprocessor.kernel_manager_class = "wsss_lib.experiments.kernels.SteadyKernelManager"
