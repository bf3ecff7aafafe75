"""Emergency (应急, issue 8): incident reports graded per State Council Order 493, early-warning
broadcasts with acknowledgements and threshold overrides, duty rosters."""
