"""The data floor every method shares: the HDF5 tile-store format, reader, writer and statistics, and the
`TileDataset` loader with joint augmentation. Imports no harness or plugin code.
"""
