# This file is part of lsst-ip-diffim.
#
# Developed for the LSST Data Management System.
# This product includes software developed by the LSST Project
# (https://www.lsst.org).
# See the COPYRIGHT file at the top-level directory of this distribution
# for details of code ownership.
#
# This program is free software: you can redistribute it and/or modify
# it under the terms of the GNU General Public License as published by
# the Free Software Foundation, either version 3 of the License, or
# (at your option) any later version.
#
# This program is distributed in the hope that it will be useful,
# but WITHOUT ANY WARRANTY; without even the implied warranty of
# MERCHANTABILITY or FITNESS FOR A PARTICULAR PURPOSE.  See the
# GNU General Public License for more details.
#
# You should have received a copy of the GNU General Public License
# along with this program.  If not, see <https://www.gnu.org/licenses/>.
"""Principal-component analysis of a set of images (afw's ImagePca)."""

from __future__ import annotations

__all__ = ["ImagePca"]

import numpy as np


class ImagePca:
    """Principal components of a set of same-sized images.

    Parameters
    ----------
    constantWeight : `bool`, optional
        Weight all images equally (the only mode ip_diffim uses).

    Notes
    -----
    Images are held by reference, as in afw, so in-place edits made after
    `addImage` (e.g. mean subtraction) change the analysis.
    """

    def __init__(self, constantWeight: bool = True) -> None:
        self._constantWeight = constantWeight
        self._images: list[np.ndarray] = []
        self._fluxes: list[float] = []
        self._eigenValues: np.ndarray = np.zeros(0)
        self._eigenImages: list[np.ndarray] = []

    def addImage(self, image: np.ndarray, flux: float = 1.0) -> None:
        """Add an image (by reference) with its flux.

        Raises
        ------
        ValueError
            If the image size differs from earlier ones, or the flux is 0.
        """
        if flux == 0.0:
            raise ValueError("Flux of an image added to the PCA may not be 0.")
        if self._images and image.shape != self._images[0].shape:
            raise ValueError(
                f"All PCA images must have the same shape; got {image.shape} and {self._images[0].shape}."
            )
        self._images.append(image)
        self._fluxes.append(float(flux))

    def getImageList(self) -> list[np.ndarray]:
        """Return a new list of the images added so far."""
        return list(self._images)

    def getMean(self) -> np.ndarray:
        """Return the plain average of the current images.

        Raises
        ------
        ValueError
            If there are no images.
        """
        if not self._images:
            raise ValueError("No images in the PCA.")
        return np.mean(np.stack(self._images), axis=0)

    def analyze(self) -> None:
        """Compute eigenvalues (decreasing, raw) and eigen images.

        Raises
        ------
        ValueError
            If there are no images.
        """
        n = len(self._images)
        if n == 0:
            raise ValueError("No images to analyze.")
        if n == 1:
            self._eigenValues = np.array([1.0])
            self._eigenImages = [self._images[0].copy()]
            return
        stack = np.stack(self._images).reshape(n, -1).astype(float)
        stack = np.where(np.isfinite(stack), stack, 0.0)
        fluxes = np.asarray(self._fluxes)
        gram = stack @ stack.T
        r = gram / np.outer(fluxes, fluxes) / n
        values, vectors = np.linalg.eigh(r)
        order = np.argsort(values)[::-1]
        values = values[order]
        vectors = vectors[:, order]
        fluxBar = fluxes.mean()
        weights = vectors * (fluxBar / fluxes)[:, np.newaxis]
        nEigen = min(n, 100)
        eigen = (weights[:, :nEigen].T @ stack).reshape((nEigen,) + self._images[0].shape)
        self._eigenValues = values
        self._eigenImages = [e for e in eigen]

    def getEigenValues(self) -> list[float]:
        """Return the eigenvalues of the last analysis, largest first."""
        return [float(v) for v in self._eigenValues]

    def getEigenImages(self) -> list[np.ndarray]:
        """Return the eigen-images of the last analysis, in eigenvalue order."""
        return list(self._eigenImages)
