"""absl entry points: distill, train, export, train_plain_keras, benchmark, summarize."""


def quiet_info_logs():
    """absl prints TensorFlow's and TFDS's INFO lines (one per checkpoint save, several
    per dataset read), which drown the progress bars; show warnings and errors only,
    unless the user asked for a --verbosity."""
    from absl import flags, logging
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)


def entry_point(run):
    """The `main(argv)` of an absl entry point around `run()`: refuses stray arguments,
    quiets INFO logs, and turns a DistillError (bad input) into one `error: ...` line
    and exit status 2, with no traceback."""
    import sys

    def main(argv):
        from absl import app
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {argv[1:]}")
        quiet_info_logs()
        # Imported here, after flag parsing, so that --help stays instant.
        from kerasdistill.errors import DistillError
        from kerasdistill.hardware import enable_gpu_memory_growth
        enable_gpu_memory_growth()  # before anything touches a GPU
        try:
            run()
        except DistillError as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(2)

    return main
