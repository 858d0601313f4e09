"""Turns persona datasets into a LoRA adapter (``mafioso train``) and checks them (``mafioso data check``)."""
