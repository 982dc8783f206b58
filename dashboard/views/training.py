import streamlit as st

st.title("training")
st.info("Being built.")
