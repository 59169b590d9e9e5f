"""Pretrained xrdcore models, shipped as package data (see :mod:`xrdcore.zoo`)."""
