"""Shared sample texts for the Spark op tests."""

GOOD = """The river flows through the old town and past the mill where grain was ground for years.
Farmers brought their harvest to the miller, who kept careful records of every sack.
In winter the water froze at the edges, and the wheel turned slowly with a heavy sound.
Children from the village would gather near the bank to watch the ice break in spring.
Today the building is a small museum that shows how the machinery once worked together.
Visitors can walk along the path and read about the families that lived beside the water."""
