"""nbgrader configuration: this repository *is* the nbgrader course directory.

`solutions/` holds the source notebooks and `assignments/` the student release, so
`nbgrader generate_assignment a1_attention` run from here writes the committed release.
"""

import os

c = get_config()  # noqa: F821  (injected by traitlets)

c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "assignments"
c.CourseDirectory.submitted_directory = "submitted"
c.CourseDirectory.autograded_directory = "autograded"
c.CourseDirectory.feedback_directory = "feedback"
c.CourseDirectory.db_url = "sqlite:///gradebook.db"
c.CourseDirectory.course_id = "transformers"

# The release keeps every signature and docstring; only bodies become this stub.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"
