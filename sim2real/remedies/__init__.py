"""The remedies of DESIGN.md section 7: close (calibrate), monitor, restrict (envelope).

Robustify is randomization plus training (:mod:`sim2real.randomization`,
:mod:`sim2real.training`).
"""
