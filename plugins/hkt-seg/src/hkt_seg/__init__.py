"""hkt-seg: semantic segmentation for hkt.

A PocketNet-style U-Net child (:func:`~hkt_seg.models.pocketnet`, the same width at every level)
inherits from a dense-encoder U-Net parent (:func:`~hkt_seg.models.dense_unet`) through 3HKT at the
encoder, the bottleneck and the segmentation output. The ``seg`` task trains with cross-entropy
plus soft Dice and reports global Dice and IoU; readers load PNG image/mask folders and LiTS
NIfTI volumes; ``seg-synthetic`` is a generated texture set with exact masks.

Everything is registered by :mod:`hkt_seg.plugin` through hkt's hooks, like any plugin::

    hkt align seg-denseunet-pocketnet
    hkt train seg-demo --method hkt
    hkt seg show runs/<run>
"""

__version__ = "0.1.0"
