"""``outreach serve``: the webhook and unsubscribe routes (``app``), and the writer that
stores webhooks with group commit and sends the replies they cause (``writer``)."""
