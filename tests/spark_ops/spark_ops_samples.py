"""Shared sample texts for the Spark op tests."""

GOOD = """The river flows through the old town and past the mill where grain was ground for years.
Farmers brought their harvest to the miller, who kept careful records of every sack.
In winter the water froze at the edges, and the wheel turned slowly with a heavy sound.
Children from the village would gather near the bank to watch the ice break in spring.
Today the building is a small museum that shows how the machinery once worked together.
Visitors can walk along the path and read about the families that lived beside the water."""

# An article page with navigation and footer boilerplate around its body.
PAGE = """<html><head><title>River report</title></head><body>
<nav><a href="/">Home</a> | <a href="/about">About</a></nav>
<article><h1>River report</h1>
<p>The committee published its annual report on water quality in the northern rivers.
Samples were taken every month at twelve stations along the main channel.</p>
<p>Nitrate levels fell for the third year in a row, which the authors attribute to
changes in farming practice upstream and to the new treatment plant.</p></article>
<footer>Copyright 2024. All rights reserved.</footer></body></html>"""
