"""Adaptation of pretrained models: parameter-efficient fine-tuning (peft.py)."""
