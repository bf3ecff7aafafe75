"""Data sharing with other bureaus (数据共享交换): what a key's grant lets through
(``grants``), the audit of every key request (``audit``), bulk exports (``server.exports``)
and the registries' data-quality report (``quality``)."""
