"""Developer tools behind ``assistflow``: the offline template check and function packaging.

Each is imported only by the subcommand that needs it (the template check starts a Node.js
process for the ROS CDK; packaging runs pip), so nothing else pays for them.
"""
