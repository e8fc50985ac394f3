"""Domains: colored-MNIST digits, folders of images, and (later) 2-D point sets."""

from .domains import DomainSource, data_dir_or_default, domain_source, load_domain_images

__all__ = ["DomainSource", "data_dir_or_default", "domain_source", "load_domain_images"]
