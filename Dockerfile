# The Gradescope autograder's environment for anyone who grades in containers: the same files as
# `python -m autograder gradescope ASSIGNMENT` zips (built here, inside the image, by that command), unpacked
# where Gradescope unpacks them, and the same setup.sh. Solutions, tests and examples are never copied in.
#
#   docker build -t a1-grader --build-arg ASSIGNMENT=a1_attention [--build-arg VISIBILITY=after_due_date] .
#   docker run --rm -v "$PWD/submitted/alice/a1_attention:/autograder/submission:ro" \
#       -v "$PWD/results/alice:/autograder/results" a1-grader
#
# Docker's default capabilities suffice (no --privileged, no --cap-add): without CAP_SYS_ADMIN the workers get no
# namespaces, but Landlock, seccomp, rlimits and a uid of their own (this Python is world-readable) still hold.
FROM python:3.11-slim
ARG ASSIGNMENT=a1_attention
ARG VISIBILITY=visible
COPY pyproject.toml README.md constraints.txt /tmp/course/
COPY scripts/setup-env.sh /tmp/course/scripts/
COPY autograder /tmp/course/autograder
COPY assignments /tmp/course/assignments
RUN cd /tmp/course \
    && python -m autograder gradescope "$ASSIGNMENT" --visibility "$VISIBILITY" --out /tmp/autograder.zip \
    && python -m zipfile -e /tmp/autograder.zip /autograder/source \
    && rm -rf /tmp/course /tmp/autograder.zip \
    && install -m 755 /autograder/source/run_autograder /autograder/run_autograder \
    && bash /autograder/source/setup.sh
WORKDIR /autograder
ENTRYPOINT ["/autograder/run_autograder"]
