"""A quick-look PNG of a FITS image or cube, with the sky's axes from its WCS.

A cube shows one channel (the brightest one unless asked), titled with the
channel's spectral coordinate; the grey scale spans the 1st to 99.5th
percentile of the finite pixels.  matplotlib draws off-screen (Agg).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["QuicklookError", "quicklook"]


class QuicklookError(Exception):
    """The file holds no image to draw."""


def _image_hdu(hdus):
    for hdu in hdus:
        if hdu.data is not None and getattr(hdu.data, "ndim", 0) >= 2:
            return hdu
    raise QuicklookError("no image or cube in the file (no HDU with 2 or more axes)")


def _brightest(cube) -> int:
    """The channel whose brightest pixel is brightest (where a line is)."""
    import numpy as np

    peaks = [np.nanmax(plane) if np.isfinite(plane).any() else -np.inf for plane in cube]
    return int(np.argmax(peaks))


def quicklook(fits_path: str | Path, png_path: str | Path | None = None,
              channel: int | None = None) -> Path:
    """Draw ``fits_path`` (a channel of a cube, or an image) into a PNG; return its path."""
    import matplotlib
    matplotlib.use("Agg")
    import warnings

    import matplotlib.pyplot as plt
    import numpy as np
    from astropy.io import fits
    from astropy.wcs import WCS, FITSFixedWarning

    fits_path = Path(fits_path)
    png_path = Path(png_path) if png_path else fits_path.with_suffix(".png")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        try:
            hdus = fits.open(fits_path, memmap=False)
        except (OSError, ValueError) as exc:
            raise QuicklookError(f"{fits_path} is not a readable FITS file: {exc}") from None
        with hdus:
            hdu = _image_hdu(hdus)
            data = np.asarray(hdu.data, dtype=float)
            wcs = WCS(hdu.header)
            title = hdu.header.get("OBJECT") or fits_path.name
            # Drop degenerate leading axes (Stokes) until an image or a cube is left.
            while data.ndim > 3 and data.shape[0] == 1:
                data = data[0]
            if data.ndim > 3:
                raise QuicklookError(f"{data.ndim} axes with more than one plane: "
                                     "cannot choose what to draw")
            if data.ndim == 3:
                count = data.shape[0]
                index = _brightest(data) if channel is None else channel
                if not 0 <= index < count:
                    raise QuicklookError(f"channel {index}: the cube has channels 0..{count - 1}")
                data = data[index]
                spectral = wcs.sub([3]) if wcs.naxis >= 3 else None
                if spectral is not None and spectral.wcs.ctype[0]:
                    value = float(spectral.pixel_to_world_values(index))
                    unit = str(spectral.wcs.cunit[0])
                    if unit == "Hz":
                        value, unit = value / 1e6, "MHz"
                    title += f" — channel {index}, {spectral.wcs.ctype[0].split('-')[0]} " \
                             f"{value:.6g} {unit}"
                else:
                    title += f" — channel {index}"
            celestial = wcs.celestial if wcs.has_celestial else None
            unit = hdu.header.get("BUNIT", "")
    finite = data[np.isfinite(data)]
    low, high = (np.percentile(finite, [1, 99.5]) if finite.size else (0.0, 1.0))
    figure = plt.figure(figsize=(7, 6), dpi=100)
    try:
        axes = figure.add_subplot(111, projection=celestial) if celestial is not None \
            else figure.add_subplot(111)
        shown = axes.imshow(data, origin="lower", cmap="gray", vmin=low, vmax=high)
        if celestial is not None:
            axes.set_xlabel("Right ascension")
            axes.set_ylabel("Declination")
            axes.coords.grid(color="white", alpha=0.3, linestyle="dotted")
        figure.colorbar(shown, ax=axes, label=str(unit))
        axes.set_title(str(title), fontsize=9)
        figure.savefig(png_path)
    finally:
        plt.close(figure)
    return png_path
