"""What payload, ground station, workstation and bench share.

`wire` is the interface control document between payload and ground; `privacy`
holds the private-data detectors used both before training and before the air;
`logs` and `config` are the conventions every command follows.
"""

__version__ = "0.1.0"
