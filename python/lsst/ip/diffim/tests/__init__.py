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
"""Shared fixtures and assertion helpers of the lsst-ip-diffim tests.

Synthetic inputs with known truth that several test modules (and users
writing their own tests) need: masked images from arrays, upstream's delta
pair, and template/science `lsst.images.VisitImage` pairs with known PSFs,
noise and stars. Nothing here is imported by the library itself.
"""

from .images import *
from .pairs import *
from .notebookCalls import *
