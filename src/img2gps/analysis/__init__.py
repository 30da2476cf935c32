"""The reference paper's analyses as tools a user runs on their own gallery: learning curve (gallery size),
backbone scaling, feature shaping (before/after contrastive training) and a coverage map. Each writes a PNG plus
a markdown and a JSON table (bench format: title, command, date, table) to an output folder."""
