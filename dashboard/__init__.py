"""The Streamlit dashboard: thin views over ``backbones`` and ``viz``."""
