"""``dptune app``: a browser page to type a prompt and see every method's images side by side."""
