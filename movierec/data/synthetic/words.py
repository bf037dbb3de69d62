"""Word lists that synthetic titles are composed from: ordinary words, so search finds them."""

ADJECTIVES = (
    "Silent", "Broken", "Hidden", "Golden", "Last", "Lost", "Dark", "Bright", "Distant",
    "Endless", "Frozen", "Burning", "Wild", "Quiet", "Secret", "Forgotten", "Crimson", "Silver",
    "Little", "Great", "Lonely", "Restless", "Savage", "Gentle", "Wicked", "Hollow", "Eternal",
    "Midnight", "Summer", "Winter", "Autumn", "Spring", "Northern", "Southern", "Eastern",
    "Western", "Iron", "Glass", "Paper", "Stone", "Velvet", "Electric", "Atomic", "Cosmic",
    "Final", "First", "Second", "Strange", "Curious", "Dangerous", "Beautiful", "Bitter",
    "Sweet", "Cold", "Hot", "Blue", "Red", "Black", "White", "Green", "Scarlet", "Violet",
    "Ancient", "Modern", "Royal", "Wandering", "Fallen", "Rising", "Shattered", "Painted",
    "Sleeping", "Dancing", "Running", "Howling", "Whispering", "Drowned", "Haunted",
    "Invisible", "Impossible", "Perfect", "Ordinary", "Lucky", "Reckless", "Fearless",
    "Innocent", "Guilty", "Faithful", "Jealous", "Proud", "Brave", "Naked", "Open", "Empty",
    "Deep", "High", "Long", "Short", "Narrow", "Wide",
)  # fmt: skip

NOUNS = (
    "River", "Mountain", "City", "Road", "Garden", "House", "Window", "Door", "Bridge",
    "Harbor", "Forest", "Desert", "Ocean", "Sky", "Star", "Moon", "Sun", "Storm",
    "Rain", "Snow", "Fire", "Shadow", "Light", "Dream", "Night", "Morning", "Evening", "Heart",
    "Soul", "Mind", "Voice", "Song", "Dance", "Game", "Secret", "Promise", "Lie", "Truth",
    "Memory", "Letter", "Diary", "Photograph", "Mirror", "Clock", "Key", "Crown", "Sword",
    "Shield", "Ring", "Mask", "Ghost", "Stranger", "Friend", "Enemy", "Soldier", "Hunter",
    "Thief", "Detective", "Doctor", "Teacher", "Pilot", "Sailor", "Queen", "King", "Prince",
    "Princess", "Knight", "Dragon", "Wolf", "Fox", "Horse", "Bird", "Tiger", "Lion", "Bear",
    "Serpent", "Angel", "Devil", "Witch", "Wizard", "Giant", "Machine", "Robot", "Planet",
    "Galaxy", "Signal", "Code", "Engine", "Train", "Station", "Hotel", "Circus", "Theater",
    "Museum", "Library", "School", "Prison", "Castle", "Tower", "Palace", "Village", "Valley",
    "Lake", "Sea", "Shore", "Wave", "Wind", "Thunder", "Lightning", "Winter", "Summer",
    "Journey", "Voyage", "Escape", "Return", "Revenge", "Betrayal", "Rebellion", "Kingdom",
    "Empire", "Republic", "Frontier", "Border", "Line", "Circle", "Square", "Island",
    "Orchard", "Field", "Meadow", "Canyon", "Cave", "Tunnel", "Street", "Avenue", "Alley",
    "Market", "Factory", "Farm", "Ranch", "Saloon", "Gun", "Bullet", "Blade", "Arrow",
    "Feather", "Rose", "Lily", "Orchid", "Tree", "Seed", "Apple", "Wine", "Coffee",
)  # fmt: skip

PLACES = (
    "Vienna", "Paris", "Lisbon", "Tokyo", "Cairo", "Berlin", "Havana", "Istanbul", "Rome",
    "Venice", "Prague", "Budapest", "Warsaw", "Moscow", "Shanghai", "Mumbai", "Lagos",
    "Nairobi", "Sydney", "Chicago", "Boston", "Memphis", "Texas", "Alaska", "Montana",
    "Nevada", "Brooklyn", "Harlem", "Manhattan", "London", "Dublin", "Glasgow", "Oslo",
    "Stockholm", "Helsinki", "Reykjavik", "Madrid", "Seville", "Naples", "Sicily", "Athens",
    "Marrakesh", "Casablanca", "Tangier", "Bombay", "Kyoto", "Seoul", "Saigon", "Manila",
    "Rio", "Lima", "Santiago", "Mexico", "Montreal", "Quebec", "Vancouver", "Sahara",
    "Siberia", "Tibet", "Mars", "Venus", "Jupiter", "Atlantis", "Eden", "Babylon", "Troy",
)  # fmt: skip

NAMES = (
    "Anna", "Maria", "Sofia", "Elena", "Clara", "Julia", "Rosa", "Lena", "Nina", "Vera",
    "Lucy", "Emma", "Alice", "Grace", "Ruby", "Ivy", "Iris", "Hannah", "Sarah", "Laura",
    "John", "Jack", "Henry", "Oscar", "Victor", "Leo", "Max", "Felix", "Hugo", "Arthur",
    "Charlie", "Frank", "Harry", "Tom", "Sam", "Ben", "Daniel", "David", "Michael", "Peter",
    "Paul", "Thomas", "Walter", "Ernest", "Louis", "Carl", "Otto", "Ivan", "Pablo", "Marco",
)  # fmt: skip

GERUNDS = (
    "Chasing", "Finding", "Saving", "Leaving", "Becoming", "Remembering", "Losing",
    "Waiting for", "Searching for", "Crossing", "Breaking", "Killing", "Loving", "Hunting",
    "Catching", "Stealing", "Burning", "Raising", "Dreaming of", "Running from", "Fighting",
    "Following", "Meeting", "Watching", "Keeping", "Escaping", "Building", "Defending",
)  # fmt: skip
