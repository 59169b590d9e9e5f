"""Diffraction: X-ray wavelengths, the kinematic powder simulator, peak profiles."""
