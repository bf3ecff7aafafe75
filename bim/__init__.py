"""BIM: IFC models per project, placements of devices and zones, alert context, geometry.

- ``ifc_import``: check and parse an IFC file (IFC2X3, IFC4, IFC4X3) into rows
- ``store``: import a version in one transaction; tree, tasks, stored source, GLB access
- ``placement``: devices and zones on the model; ``resolve`` for the alert engine
- ``geometry``: outlines and per-storey GLB files (ifcopenshell.geom), cached by file hash
"""
