import streamlit as st

st.title("architecture")
st.info("Being built.")
