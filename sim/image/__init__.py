"""`make pi-image`: a Raspberry Pi card image (sim/image/__main__.py), one module per stage."""
