import streamlit as st

st.title("explain")
st.info("Being built.")
