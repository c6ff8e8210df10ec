"""The machine in words, for the benchmark records: standard library only, so that the
authors' harness (torch, no TensorFlow) and the GPU sitting's driver (neither) share it.
Both run as scripts from this folder, which puts it on their import path."""

import platform


def cpu_model():
    """The CPU's model name from /proc/cpuinfo (platform's word elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None
