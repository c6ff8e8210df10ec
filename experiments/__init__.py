"""absl entry points: distill, train, export, reproduce, sets, summarize, benchmark,
train_plain_keras (`python -m experiments.NAME` in the checkout, `kerasdistill NAME` installed)."""


import contextlib
import os
import re
import sys
import tempfile

# TensorFlow's C++ start-up lines (oneDNN, CUDA probing, the CPU feature guard). TF 2.21
# prints them before absl's logging is set up, so TF_CPP_MIN_LOG_LEVEL does not hide them.
_START_UP_LINES = re.compile(
    r"All log messages before absl::InitializeLog|oneDNN custom operations are on|"
    r"cudart_stub\.cc|cpu_feature_guard\.cc|^To enable the following instructions|"
    r"failed call to cuInit|Unable to register cu(DNN|FFT|BLAS) factory|"
    r"computation_placer\.cc|TF-TRT Warning|cuda_(executor|diagnostics)\.cc")


@contextlib.contextmanager
def quiet_tensorflow_start_up():
    """While TensorFlow loads and probes its devices, stderr's file descriptor goes to a
    temporary file; afterwards every line but TensorFlow's known start-up lines is
    printed back, so the first screen of a command is the project's and nothing else is
    lost. Later INFO lines of TensorFlow's C++ code (e.g. tf.data's buffer sizes), which
    TF_CPP_MIN_LOG_LEVEL does govern once logging is set up, are hidden by setting it to 1
    (warnings and errors still show). Not when the user set TF_CPP_MIN_LOG_LEVEL: they
    chose what to see."""
    if "TF_CPP_MIN_LOG_LEVEL" in os.environ:
        yield
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "1"
    sys.stderr.flush()
    with tempfile.TemporaryFile() as captured:
        saved = os.dup(2)
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for line in captured.read().decode(errors="replace").splitlines(keepends=True):
                if not _START_UP_LINES.search(line):
                    sys.stderr.write(line)
            sys.stderr.flush()


def quiet_info_logs():
    """absl prints TensorFlow's and TFDS's INFO lines (one per checkpoint save, several
    per dataset read), which drown the progress bars; show warnings and errors only,
    unless the user asked for a --verbosity."""
    from absl import flags, logging
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)


def entry_point(run):
    """The `main(argv)` of an absl entry point around `run()`: refuses stray arguments,
    quiets INFO logs and TensorFlow's start-up lines, and turns a DistillError (bad input) into one `error: ...` line
    and exit status 2, with no traceback."""
    def main(argv):
        from absl import app
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {argv[1:]}")
        quiet_info_logs()
        # Imported here, after flag parsing, so that --help stays instant.
        from kerasdistill.errors import DistillError
        with quiet_tensorflow_start_up():
            from kerasdistill.hardware import enable_gpu_memory_growth
            enable_gpu_memory_growth()  # before anything touches a GPU
        try:
            run()
        except DistillError as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(2)

    return main


# The commands of the installed `kerasdistill` command (pyproject.toml's [project.scripts]),
# one per module here; in the checkout each is also `python -m experiments.NAME`.
COMMANDS = ("distill", "train", "export", "reproduce", "sets", "summarize", "benchmark",
            "train_plain_keras")


def launch():
    """`kerasdistill COMMAND [--flags]`: runs the command's module as `python -m` would."""
    import runpy
    if len(sys.argv) == 2 and sys.argv[1] in ("-h", "--help", "help"):
        print(f"usage: kerasdistill COMMAND [--flags], COMMAND one of {', '.join(COMMANDS)}; "
              f"kerasdistill COMMAND --help lists its flags (docs/commands.md)")
        sys.exit(0)
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        asked = f"unknown command {sys.argv[1]!r}; " if len(sys.argv) > 1 and \
            not sys.argv[1].startswith("-") else ""
        print(f"{asked}usage: kerasdistill COMMAND [--flags], COMMAND one of "
              f"{', '.join(COMMANDS)}; kerasdistill COMMAND --help lists its flags",
              file=sys.stderr)
        sys.exit(2)
    command = sys.argv[1]
    # Run as `python -m` runs it (as __main__, its flags keyed to the program's name, which
    # absl's --helpshort lists), under the name a user typed.
    sys.argv = [f"kerasdistill {command}"] + sys.argv[2:]
    runpy.run_module(f"{__name__}.{command}", run_name="__main__", alter_sys=False)
