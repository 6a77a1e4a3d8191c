"""Converters from the official dataset layouts to mmbench tile stores (`mmbench data convert`)."""
