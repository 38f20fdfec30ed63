"""The Qt-free core shared by the CLI, the tests and the GUI. Nothing under app/core imports Qt."""
