"""absl entry points: distill, train, export, train_plain_keras, benchmark, summarize."""


def quiet_info_logs():
    """absl prints TensorFlow's and TFDS's INFO lines (one per checkpoint save, several
    per dataset read), which drown the progress bars; show warnings and errors only,
    unless the user asked for a --verbosity."""
    from absl import flags, logging
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
