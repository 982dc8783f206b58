"""Model zoo: which backbones exist, where their trained weights come from (bundled, cached, downloaded), and building them."""
