"""Domains: colored-MNIST digits, folders of images, and the paper's 2-D point sets."""

from .domains import (
    DomainSource,
    data_dir_or_default,
    domain_source,
    load_domain_images,
    load_labelled_images,
    load_point_domain,
)
from .points import POINT_DOMAINS, make_points

__all__ = [
    "POINT_DOMAINS",
    "DomainSource",
    "data_dir_or_default",
    "domain_source",
    "load_domain_images",
    "load_labelled_images",
    "load_point_domain",
    "make_points",
]
