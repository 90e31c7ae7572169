"""What a workspace tells its owner: campaign reports (``report``), exports of its tables
(``export``), the state at a glance (``status``), and the atomic file writes they share
(``output``)."""
