"""Distillation algorithms: one outer loop (meta_step, loop) and pluggable inner solvers."""
