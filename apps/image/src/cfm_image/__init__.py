"""cfm-image: Cumulative Flow Maps for images (two-time UNet, image data, commands, metrics).

The command line is ``cfm image train | sample | eval | demo | info`` (see the app's README);
:mod:`cfm_image.data` loads images, :mod:`cfm_image.unet` is the network.
"""

__version__ = "0.1.0"
